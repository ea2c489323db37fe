"""Builds the package with its gRPC stubs generated from the service's .proto.

The stubs are not kept in the repository: `build_py` runs grpcio-tools (a
build requirement) on `proto/sessionbridge/v1/sessionbridge.proto` and puts
`sessionbridge/v1/sessionbridge_pb2.py`, `.pyi` and `sessionbridge_pb2_grpc.py`
into the wheel. The .proto is read from the repository (`../../proto`), or
from the copy an sdist carries (`proto/`, placed there by `sdist`).

The generated code checks at import that grpcio and protobuf are no older
than the generator's own versions, so those are the runtime requirements'
lower bounds, read from the generated files.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO = "sessionbridge/v1/sessionbridge.proto"
GENERATED = (
    "sessionbridge/v1/sessionbridge_pb2.py",
    "sessionbridge/v1/sessionbridge_pb2.pyi",
    "sessionbridge/v1/sessionbridge_pb2_grpc.py",
)


def proto_root() -> Path:
    for root in (HERE / "proto", HERE.parent.parent / "proto"):
        if (root / PROTO).is_file():
            return root
    raise SystemExit(
        f"sessionbridge: {PROTO} not found in {HERE / 'proto'} or "
        f"{HERE.parent.parent / 'proto'}: build from the repository's "
        "clients/python or from an sdist"
    )


def generate(out: Path) -> None:
    """Runs protoc (grpcio-tools) on the service's .proto into `out`."""
    import importlib.resources

    from grpc_tools import protoc

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root()}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(proto_root() / PROTO),
        ]
    )
    if code != 0:
        raise SystemExit(f"sessionbridge: protoc failed on {PROTO} (exit {code})")


def requirements() -> List[str]:
    """grpcio and protobuf no older than what the stubs were generated with."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        pb2 = (Path(tmp) / GENERATED[0]).read_text()
        grpc = (Path(tmp) / GENERATED[2]).read_text()
    pb_version = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2, re.M)
    grpc_version = re.search(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc, re.M)
    if not pb_version or not grpc_version:
        raise SystemExit("sessionbridge: cannot read the generator's versions")
    major = int(pb_version.group(1))
    return [
        f"grpcio>={grpc_version.group(1)},<2",
        f"protobuf>={'.'.join(pb_version.groups())},<{major + 1}",
    ]


class BuildPy(build_py):
    """The usual build_py, plus the generated stubs."""

    def run(self) -> None:
        super().run()
        generate(Path(self.build_lib))

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        return list(super().get_outputs(include_bytecode)) + [
            str(Path(self.build_lib) / name) for name in GENERATED
        ]


class Sdist(sdist):
    """The usual sdist, carrying a copy of the .proto to build from."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto" / PROTO
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto_root() / PROTO, target)


setup(
    install_requires=requirements(),
    cmdclass={"build_py": BuildPy, "sdist": Sdist},
)
