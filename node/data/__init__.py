"""Datasets (offline sources, one loader interface) and seeded splits across peers."""

from rumor.node.data.datasets import (
    DATASET_NAMES,
    DEFAULT_DATASET,
    Dataset,
    cache_path,
    check_name,
    default_data_dir,
    fetch_dataset,
    is_prepared,
    load_dataset,
)
from rumor.node.data.splits import SPLIT_SYNTAX, SplitSpec, parse_split, split_indices

__all__ = [
    "DATASET_NAMES",
    "DEFAULT_DATASET",
    "SPLIT_SYNTAX",
    "Dataset",
    "SplitSpec",
    "cache_path",
    "check_name",
    "default_data_dir",
    "fetch_dataset",
    "is_prepared",
    "load_dataset",
    "parse_split",
    "split_indices",
]
