"""A wheel's platform tag against the symbol versions its libraries need (and a -C manylinux target).

A ``manylinux_2_28`` tag promises the wheel loads on any glibc 2.28 system
with the libstdc++ of that policy.  An object needing ``GLIBCXX_3.4.30`` breaks
that promise at import time (``version `GLIBCXX_3.4.30' not found``), so it is
an error here, as is a wheel needing more than the build's target policy.
The policy table is auditwheel's (see backend/wheels/manylinux.py).
"""

from __future__ import annotations

from ..wheels import manylinux, names
from .report import ERROR, Problem


def check(built, target: str | None) -> list[Problem]:
    """``built``: a wheel read once (``wheels.built``): its name's tags, its objects' symbol versions."""
    tags = names.parse(built.name).platform_tags
    platform = next((p for p in ("x86_64", "aarch64") if any(t.endswith("_" + p) for t in tags)), None)
    if platform is None:
        return []  # pure Python (any), or a platform the matrix has not
    needed = {name: record.versions for name, record in built.objects.items()}
    if not any(needed.values()):
        return []
    problems: list[Problem] = []
    promised = [manylinux.tag_policy_name(t) for t in tags]
    for name in [p for p in promised if p]:
        try:
            policy = manylinux.policies(platform).get_policy_by_name(name)
        except LookupError:
            problems.append(Problem(ERROR, "manylinux", f"platform tag {name} is no manylinux policy auditwheel knows"))
            continue
        problems += _beyond(needed, policy, f"its tag {name} allows")
    if target is not None:
        policy = manylinux.policy(platform, target)
        if not any(promised):
            problems.append(Problem(ERROR, "manylinux", f"tagged {'.'.join(tags)}, not manylinux: the build's "
                                    f"-C manylinux={target} target is not met (see the build log for why)"))
        problems += _beyond(needed, policy, f"-C manylinux={target} allows")
    return problems


def _beyond(needed: dict[str, set[str]], policy, what: str) -> list[Problem]:
    out = []
    for member, versions in sorted(needed.items()):
        over = manylinux.beyond_policy(versions, policy)
        if over:
            limits = {f: max(v, key=manylinux._version_key) for f, v in policy.symbol_versions.items() if v}
            allowed = ", ".join(f"{f}_{limits[f]}" for f in sorted({o.partition('_')[0] for o in over}) if f in limits)
            out.append(Problem(ERROR, "manylinux", f"needs {', '.join(over[-3:])}, newer than {what} ({allowed}): "
                               "'version ... not found' at import on such systems", member))
    return out
