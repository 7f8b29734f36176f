"""`edgeflower service install|uninstall`: run `edgeflower classify` as a systemd service (starts at boot,
restarts after a crash). Writes or removes the unit file only: enabling and starting it is the user's command,
printed for them, so nothing here needs root unless the unit goes to /etc.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeflower.errors import ServiceError

SYSTEM_DIR = Path("/etc/systemd/system")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}$")
# classify options whose value reaches the network: the unit then waits for the network to be up
NETWORK_OPTIONS = ("--mqtt", "--post")
# classify options whose value is a local path: made absolute, so that the unit does not depend on where it runs
PATH_OPTIONS = ("--jsonl", "--save", "--images", "--video")


@dataclass(frozen=True)
class Unit:
    name: str
    path: Path
    text: str
    user_unit: bool

    def commands(self) -> tuple[str, str]:
        """The two commands that enable and start it, and follow its log."""
        if self.user_unit:
            return (f"systemctl --user daemon-reload && systemctl --user enable --now {self.name}",
                    f"journalctl --user -u {self.name} -f")
        return (f"sudo systemctl daemon-reload && sudo systemctl enable --now {self.name}",
                f"journalctl -u {self.name} -f")


def unit_dir(user_unit: bool, override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override)
    if user_unit:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "systemd" / "user"
    return SYSTEM_DIR


def _absolute_paths(args: list[str], cwd: Path) -> list[str]:
    out, i = [], 0
    while i < len(args):
        a = args[i]
        opt, eq, val = a.partition("=")
        if opt in PATH_OPTIONS and eq:
            out.append(f"{opt}={_abs(val, cwd)}")
        elif a in PATH_OPTIONS and i + 1 < len(args):
            out += [a, _abs(args[i + 1], cwd)]
            i += 1
        else:
            out.append(a)
        i += 1
    return out


def _abs(value: str, cwd: Path) -> str:
    if "://" in value or value.startswith("/"):  # a URL (a video stream) or already absolute
        return value
    return str((cwd / value).resolve())


def _quote(arg: str) -> str:
    """One ExecStart argument: systemd's own quoting (double quotes), % and $ escaped."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_./:=@+,-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(model: str | os.PathLike, classify_args: list[str], name: str, user_unit: bool,
                executable: str | None = None, cwd: str | os.PathLike | None = None,
                run_as: str | None = None) -> str:
    cwd = Path(cwd or os.getcwd()).resolve()
    exe = executable or str(Path(sys.executable).with_name("edgeflower"))
    argv = [exe, "classify", str(Path(model).resolve())] + _absolute_paths(list(classify_args), cwd)
    network = any(a.partition("=")[0] in NETWORK_OPTIONS for a in classify_args)
    lines = ["[Unit]", f"Description=edgeflower classify ({Path(model).name})"]
    if network:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += ["StartLimitIntervalSec=300", "StartLimitBurst=10", "", "[Service]", "Type=simple",
              f"WorkingDirectory={cwd}", "ExecStart=" + " ".join(_quote(a) for a in argv),
              "Restart=on-failure", "RestartSec=5", "Environment=PYTHONUNBUFFERED=1"]
    if not user_unit and run_as:
        lines += [f"User={run_as}", "SupplementaryGroups=video"]  # the camera devices belong to group video
    lines += ["", "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


def install(model: str | os.PathLike, classify_args: list[str], name: str = "edgeflower", user_unit: bool = False,
            directory: str | os.PathLike | None = None, force: bool = False, executable: str | None = None) -> Unit:
    if not NAME_RE.match(name):
        raise ServiceError(f"service name {name!r}: use letters, digits, '-', '_' or '.'")
    if not Path(model).is_file():
        raise ServiceError(f"model {model} not found: pass an exported .tflite or .onnx file")
    exe = executable or str(Path(sys.executable).with_name("edgeflower"))
    if not os.access(exe, os.X_OK):
        raise ServiceError(f"{exe} is not executable: install edgeflower in this environment first")
    run_as = os.environ.get("SUDO_USER") or (None if os.geteuid() == 0 else _user())
    text = render_unit(model, classify_args, name, user_unit, executable=exe, run_as=run_as)
    folder = unit_dir(user_unit, directory)
    path = folder / f"{name}.service"
    if path.exists() and not force:
        raise ServiceError(f"{path} exists: pass --force to replace it, or choose another --name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except PermissionError as exc:
        raise ServiceError(f"cannot write {path} ({exc.strerror}): run with sudo, or install a user service "
                           "with --user") from exc
    return Unit(name, path, text, user_unit)


def uninstall(name: str = "edgeflower", user_unit: bool = False,
              directory: str | os.PathLike | None = None) -> list[Path]:
    """Remove the unit and the links that enabling it made (what `systemctl disable` removes): the paths."""
    folder = unit_dir(user_unit, directory)
    path = folder / f"{name}.service"
    if not path.exists():
        raise ServiceError(f"no unit {path} to remove")
    removed = []
    try:
        for p in [*folder.glob(f"*.wants/{name}.service"), path]:
            p.unlink()
            removed.append(p)
    except PermissionError as exc:
        raise ServiceError(f"cannot remove {path} ({exc.strerror}): run with sudo") from exc
    return removed


def _user() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return None

