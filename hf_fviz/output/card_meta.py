"""Editing a model card as text: the `feature-visualization` tag in the YAML front matter and
the one hf_fviz section between its markers. Everything else stays byte for byte (a YAML
parse/dump round trip would reorder keys, drop comments and change quoting); line endings are
kept, and a second run gives the same file as the first."""

from __future__ import annotations

import re

from ..errors import PublishError

START = "<!-- hf-fviz:start -->"
END = "<!-- hf-fviz:end -->"
TAG = "feature-visualization"


_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
"""The hub's own front-matter regex (huggingface_hub.repocard.REGEX_YAML_BLOCK, "exact same regex
as in the Hub server"); copied so that a change there cannot silently move our edits."""

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_TAGS_KEY = re.compile(r"""^(?:tags|"tags"|'tags')[ \t]*:(?=[ \t]|$)""")
_LIST_ITEM = re.compile(r"^([ \t]*)-(?=[ \t]|$)[ \t]*(.*)$")
_BLANK_OR_COMMENT = re.compile(r"^[ \t]*(#.*)?$")


def _eol(text: str) -> str:
    """The line ending most used in `text` (LF when there is none)."""
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    if crlf >= max(lf, cr) and crlf:
        return "\r\n"
    return "\r" if cr > lf else "\n"


def _strip_comment(value: str) -> str:
    m = re.search(r"(^|[ \t])#", value)
    return (value[: m.start()] if m else value).strip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def add_tag(text: str, tag: str = TAG) -> str:
    """Insert `tag` into the card's YAML `tags` as text; the rest of the card is left untouched."""
    m = _FRONT_MATTER.search(text)
    if m is None:  # no front matter: a minimal one in front of the untouched text
        eol = "\r\n" if _eol(text) == "\r\n" else "\n"  # the hub regex wants LF or CRLF after '---'
        return f"---{eol}tags:{eol}- {tag}{eol}---{eol}" + text
    eol = _eol(m.group(0))
    y0, y1 = m.start(2), m.end(2)
    lines = [(y0 + lm.start(), y0 + lm.end()) for lm in _LINE.finditer(text[y0:y1]) if lm.end() > lm.start()]

    def content(span: tuple[int, int]) -> str:
        return text[span[0] : span[1]].rstrip("\r\n")

    key = next((i for i, span in enumerate(lines) if _TAGS_KEY.match(content(span))), None)
    if key is None:  # no tags key: a block list at the end of the YAML
        addition = f"tags:{eol}- {tag}"
        return text[:y1] + (eol + addition if y1 > y0 else addition) + text[y1:]
    line = content(lines[key])
    value_start = lines[key][0] + _TAGS_KEY.match(line).end()
    raw_value = line[_TAGS_KEY.match(line).end() :]
    value = _strip_comment(raw_value)
    if value in ("", "null", "~", "Null", "NULL"):
        items: list[tuple[int, str, str]] = []  # (end of line content, indent, value)
        for span in lines[key + 1 :]:
            body = content(span)
            item = _LIST_ITEM.match(body)
            if item:
                items.append((span[0] + len(body), item.group(1), _unquote(_strip_comment(item.group(2)))))
            elif _BLANK_OR_COMMENT.match(body) or (items and body[:1] in (" ", "\t")):
                continue
            else:
                break
        if any(v == tag for _, _, v in items):
            return text
        if items:
            pos, indent, _ = items[-1]
            return text[:pos] + f"{eol}{indent}- {tag}" + text[pos:]
        if value == "":
            pos = lines[key][0] + len(line)
            return text[:pos] + f"{eol}- {tag}" + text[pos:]
        at = value_start + raw_value.index(value)
        return text[:at] + f"[{tag}]" + text[at + len(value) :]
    if value.startswith("["):
        open_at = value_start + raw_value.index("[")
        close_at = text.find("]", open_at, y1)
        if close_at < 0:
            raise PublishError("README.md: the YAML 'tags' list is not closed with ']'; fix the card's metadata first")
        inner = text[open_at + 1 : close_at]
        if any(_unquote(v) == tag for v in inner.split(",")):
            return text
        stripped = inner.rstrip()
        if not stripped.strip():
            return text[: open_at + 1] + tag + text[open_at + 1 :]
        pos = open_at + 1 + len(stripped)
        return text[:pos] + (f" {tag}" if stripped.endswith(",") else f", {tag}") + text[pos:]
    if value.startswith(("{", "|", ">", "&", "*", "!")):
        raise PublishError("README.md: the YAML 'tags' value is not a list; fix the card's metadata first")
    if _unquote(value) == tag:
        return text
    at = value_start + raw_value.index(value)  # a single tag as a scalar: make it a flow list
    return text[:at] + f"[{value}, {tag}]" + text[at + len(value) :]


def _body_start(text: str) -> int:
    m = _FRONT_MATTER.search(text)
    return m.end() if m else 0


def upsert_section(text: str, section: str) -> str:
    """Put `section` between the markers: replace the existing section, or append one.

    The new section takes the line ending that follows the old section's start marker (or the
    card's)."""
    body = _body_start(text)
    start = text.find(START, body)
    if start >= 0:
        end = text.find(END, start + len(START))
        if end < 0:
            raise PublishError(f"README.md has {START} but no {END}; remove the broken section first")
        end += len(END)
        after_start = start + len(START)  # the line ending right after the start marker sets the section's
        eol = "\r\n" if text.startswith("\r\n", after_start) else "\n"
        return text[:start] + _block(section, eol) + text[end:]
    eol = _eol(text[body:]) if text[body:] else _eol(text)
    if eol == "\r":
        eol = "\n"
    if not text:
        sep = ""
    elif text.endswith(("\n", "\r")):
        sep = eol
    else:
        sep = eol * 2
    return text + sep + _block(section, eol) + eol


def _block(section: str, eol: str) -> str:
    lines = section.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return eol.join([START, *lines, END])


def update_card(text: str | None, section: str, *, library: str | None = None) -> str:
    """The whole new README.md text; `text=None` (no README) gives a minimal valid card."""
    if text is None:
        meta = f"library_name: {library}\n" if library and re.fullmatch(r"[A-Za-z0-9_.-]+", library) else ""
        text = f"---\n{meta}tags:\n- {TAG}\n---\n"
    tagged = add_tag(text)
    _check_metadata(tagged)
    return upsert_section(tagged, section)


def _check_metadata(text: str) -> None:
    """Parse the edited front matter (read only, never dumped): the card must stay valid metadata
    with the tag, or nothing is written. Catches cards whose YAML was already broken."""
    import yaml

    m = _FRONT_MATTER.search(text)
    try:
        data = yaml.safe_load(m.group(2)) if m else None
    except yaml.YAMLError as err:
        raise PublishError(f"README.md metadata (the YAML between '---' lines) is not valid YAML; fix it first ({_one_line(err)})") from None
    data = {} if data is None else data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise PublishError("README.md metadata (the YAML between '---' lines) is not a mapping of names to values; fix it first")
    tags = data.get("tags")
    if not (tags == TAG or (isinstance(tags, list) and TAG in tags)):
        raise PublishError(f"could not add the {TAG!r} tag to README.md metadata; add it by hand")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
