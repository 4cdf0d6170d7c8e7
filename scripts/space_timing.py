"""Space default class visualization of builtin:mobilenetv2, as the page runs it (model load excluded).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python scripts/space_timing.py

Prints wall and process CPU seconds: on a busy machine the CPU seconds bound what two idle cores take."""
import os, time, tempfile
os.environ.setdefault("HF_FVIZ_SPACE_DIR", tempfile.mkdtemp(prefix="wt16_time_"))
from hf_fviz.space.app import Caps, ModelStore, make_request, run_blocking
caps = Caps.from_env()
store = ModelStore(caps)
store.get("builtin:mobilenetv2")
req = make_request(caps, "builtin:mobilenetv2", "logits", ["1"], "maco", caps.default_steps, caps.default_size)
t = time.perf_counter(); c = time.process_time(); run = run_blocking(store, req); dt = time.perf_counter() - t; cpu = time.process_time() - c
print(f"steps={req.steps} size={req.size} crops={req.crops} threads={__import__('torch').get_num_threads()} seconds={dt:.1f} cpu_seconds={cpu:.1f} items={[(i['label'], round(i['objective'],2)) for i in run.items]}")
import shutil; shutil.rmtree(os.environ["HF_FVIZ_SPACE_DIR"])
