"""The app's config, in three parts: :mod:`~bucketrnn.app.config.schema` (the structured
configs Hydra composes), :mod:`~bucketrnn.app.config.validate` (the checks types cannot express)
and :mod:`~bucketrnn.app.config.resume` (what a resumed run may change). Library code never sees
these objects; the app turns the config into plain arguments."""

from bucketrnn.app.config.resume import RESUMABLE, restore
from bucketrnn.app.config.schema import (
    CONF_DIR,
    Attention,
    BucketingConfig,
    Cell,
    Config,
    DatasetConfig,
    DatasetName,
    LastBatch,
    LrSchedule,
    MemoryConfig,
    MemoryPolicy,
    Mode,
    ModelConfig,
    ModelName,
    Overflow,
    Precision,
    Strategy,
    Tokens,
    TrainerConfig,
    fingerprint,
    register,
    saved_config,
    to_dict,
)
from bucketrnn.app.config.validate import OPTIMIZERS, check_vocab_size, parse_context, validate

__all__ = ["CONF_DIR", "OPTIMIZERS", "RESUMABLE", "Attention", "BucketingConfig", "Cell", "Config",
           "DatasetConfig", "DatasetName", "LastBatch", "LrSchedule", "MemoryConfig",
           "MemoryPolicy", "Mode", "ModelConfig", "ModelName", "Overflow", "Precision", "Strategy",
           "Tokens", "TrainerConfig", "check_vocab_size", "fingerprint", "parse_context",
           "register", "restore", "saved_config", "to_dict", "validate"]
