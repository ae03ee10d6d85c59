"""The READMEs' claims about defaults, kernels and the bundled configs agree with the code.

Three kinds of claim are checked, so a changed default or a new kernel fails here until the docs
follow:
- train README's config table: the default column is the dataclass default (what a key gets when
  a config file leaves it out), with `(default.toml: X)` exactly where the shipped default.toml
  sets something else; the kernel rows list exactly the keys of nn's kernel tables.
- nn README's `ComputeConfig(...)` signature: exactly the class's fields, each one's alternatives
  its kernel table's keys, the first one its default.
- Any paragraph, list item or table row that names one bundled config file (`default.toml`,
  `tinystories.toml`, ...) and holds `section.key = value` code spans: each is that config's
  effective value.
"""

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from tinylm.apps import RUNS, load_run_config
from tinylm.nn import ATTENTION_KERNELS, LOSS_KERNELS, POINTWISE_KERNELS, ComputeConfig
from tinylm.train import (
    DataConfig,
    EvalConfig,
    LoopConfig,
    OptimConfig,
    RunComputeConfig,
    RunConfig,
    SampleConfig,
    bundled_configs,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]
TRAIN_README = ROOT / "packages" / "train" / "README.md"
NN_README = ROOT / "packages" / "nn" / "README.md"
READMES = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md")), ROOT / "apps/README.md"]
SECTIONS = {
    "data": DataConfig,
    "compute": RunComputeConfig,
    "optim": OptimConfig,
    "train": LoopConfig,
    "eval": EvalConfig,
    "run": RunConfig,
    "sample": SampleConfig,
}
KERNEL_TABLES = {
    "compute.attention": ATTENTION_KERNELS,
    "compute.pointwise": POINTWISE_KERNELS,
    "compute.loss": LOSS_KERNELS,
}


def _value(text: str):
    """A README value as Python: `unset` = None, TOML literals, else the bare word."""
    text = text.strip().strip("`").replace("\\|", "|")
    if text == "unset":
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _field_default(section: str, name: str):
    field = {f.name: f for f in dataclasses.fields(SECTIONS[section])}[name]
    if field.default_factory is not dataclasses.MISSING:
        return _plain(field.default_factory())
    return _plain(field.default)


def _table_rows():
    """(keys, default cell, meaning cell) of every row of train README's config table."""
    for line in TRAIN_README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        section = names[0].split(".")[0]
        keys = [n if "." in n else f"{section}.{n}" for n in names]
        yield keys, cells[1], cells[2]


ROWS = [row for row in _table_rows() if row[1] and not row[0][0].endswith(".*")]


def test_the_config_table_was_found():
    keys = {key for row in ROWS for key in row[0]}
    assert {"compute.loss", "compute.attention", "train.max_steps", "sample.seed"} <= keys
    assert len(keys) > 60


@pytest.mark.parametrize(("keys", "cell", "meaning"), ROWS, ids=[", ".join(r[0]) for r in ROWS])
def test_train_readme_table_defaults(keys, cell, meaning):
    shipped = load_config()  # the embedded default run: configs/default.toml
    match = re.fullmatch(r"(.*?)(?: \(default\.toml: (.*)\))?", cell)
    documented = [_value(v) for v in match[1].split(", ")]
    in_toml = [_value(v) for v in match[2].split(", ")] if match[2] else None
    if len(documented) == 1:  # one value for every key of the row
        documented *= len(keys)
    code = [_field_default(*key.split(".")) for key in keys]
    toml = [_plain(getattr(getattr(shipped, key.split(".")[0]), key.split(".")[1])) for key in keys]
    assert documented == code, f"README says {cell!r}; the code's defaults are {code}"
    if toml != code:
        assert in_toml == toml, f"README says {cell!r}; default.toml sets {toml}"
    else:
        assert in_toml is None, f"README says {cell!r}; default.toml keeps the default {code}"


@pytest.mark.parametrize("key", sorted(KERNEL_TABLES))
def test_train_readme_lists_every_kernel(key):
    """The kernel rows name exactly the kernels there are (lower-case code spans)."""
    (meaning,) = [m for keys, _, m in _table_rows() if keys == [key]]
    named = set(re.findall(r"`([a-z][a-z0-9_]*)`", meaning))
    assert named == set(KERNEL_TABLES[key]), meaning


def test_nn_readme_compute_signature():
    text = " ".join(NN_README.read_text(encoding="utf-8").split())
    (signature,) = re.findall(r"`ComputeConfig\(attention=.*?\)`", text)
    defaults = ComputeConfig()
    for key, table in KERNEL_TABLES.items():
        name = key.split(".")[1]
        choices = re.search(rf"\b{name}=((?:\"[a-z_0-9]+\"\|?)+)", signature)
        assert choices, f"{name} missing from {signature}"
        listed = re.findall(r'"([a-z_0-9]+)"', choices[1])
        assert set(listed) == set(table), f"{name}: {listed} vs {list(table)}"
        assert listed[0] == getattr(defaults, name), f"{name}: the first one is the default"
    (shown,) = re.findall(r"\bfused_qkv=(True|False)", signature)
    assert shown == str(defaults.fused_qkv)
    # exactly nn's fields: the run's compile/dtype are train's (RunComputeConfig)
    named = re.findall(r"\b([a-z_]+)=", signature)
    assert named == [f.name for f in dataclasses.fields(ComputeConfig)]


def _bundled(name: str):
    if name in RUNS:
        return load_run_config(name)[1]
    return load_config(name)


CONFIG_FILE = re.compile(r"\b([a-z_0-9]+)\.toml\b")
CLAIM = re.compile(r"`([a-z]+)\.([a-z_0-9]+) = ([^`]+)`")


def _claims():
    """(readme, config name, key, value) for each `section.key = value` of a block (paragraph,
    list item, table row) that names a bundled config: the claim is about the config named last
    before it (or the block's only one)."""
    known = {*bundled_configs(), *RUNS}
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        for block in re.split(r"\n\s*\n|\n(?=- )|\n(?=\|)", text):
            mentions = [(m.start(), m[1]) for m in CONFIG_FILE.finditer(block) if m[1] in known]
            for claim in CLAIM.finditer(block):
                before = [name for at, name in mentions if at < claim.start()]
                if before:
                    name = before[-1]
                elif len({name for _, name in mentions}) == 1:
                    name = mentions[0][1]
                else:
                    continue
                section, key, value = claim.groups()
                yield readme.relative_to(ROOT), name, f"{section}.{key}", value


CLAIMS = list(_claims())


def test_claims_about_bundled_configs_were_found():
    found = {(name, key) for _, name, key, _ in CLAIMS}
    # two the user test found wrong (the third, train's loss default, is the table's)
    assert {("default", "compute.fused_qkv"), ("tinystories", "compute.attention")} <= found


@pytest.mark.parametrize(
    ("readme", "name", "key", "value"), CLAIMS, ids=[f"{c[1]}:{c[2]}" for c in CLAIMS]
)
def test_claims_about_bundled_configs(readme, name, key, value):
    section, field = key.split(".")
    actual = _plain(getattr(getattr(_bundled(name), section), field))
    assert _value(value) == actual, (
        f"{readme} says {name}.toml has {key} = {value}; it has {actual!r}"
    )
