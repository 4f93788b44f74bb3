"""The ISA table agrees with the compiler (each row's flags bring the host features it requires) and with the settings."""

import platform
import shutil
import subprocess

import pytest

from backend import cpu_isa
from backend import settings
from backend.errors import BackendError

needs_x86_gcc = pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                                reason="needs gcc for x86_64")


def _macros(flags) -> set[str]:
    out = subprocess.run(["gcc", "-march=x86-64", *flags, "-E", "-dM", "-x", "c", "-"], input="",
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("#define __")}


@needs_x86_gcc
@pytest.mark.parametrize("name", cpu_isa.X86_ISAS)
def test_flags_bring_the_host_features_the_row_requires(name):
    isa = cpu_isa.get(name)
    defined = _macros(isa.flags)
    wanted = {f"__{feature.replace('_', '').upper()}__" for feature in isa.host_features}
    assert wanted <= defined, sorted(wanted - defined)


def test_the_isa_setting_accepts_exactly_the_rows():
    for name in cpu_isa.ISAS:
        assert settings.resolve({"isa": name}).isa == name
    with pytest.raises(BackendError) as error:
        settings.resolve({"isa": "avx512_bf16"})
    assert ", ".join(cpu_isa.ISAS) in str(error.value)
