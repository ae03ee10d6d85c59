"""train's [optim] section is `tinylm.optim.OptimConfig` itself, declared once.

So the TOML schema, the `--optim.key` overrides (parsed by its field types) and the errors are
optim's, and what a config file says is what `OptimConfig.build` builds.
"""

import typing

from tinylm.optim import OptimConfig
from tinylm.train import OptimConfig as TrainOptimConfig
from tinylm.train import TrainConfig, load_config


def test_the_optim_section_is_optims_class():
    assert TrainOptimConfig is OptimConfig
    assert typing.get_type_hints(TrainConfig)["optim"] is OptimConfig
    assert type(load_config("modern").optim) is OptimConfig
