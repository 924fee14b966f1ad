"""Dataset families: one descriptor per `--dataset_name`, asked everywhere instead of comparing names."""
from __future__ import annotations

import ast
from pathlib import Path

from datasets.families import FAMILIES, family_of
from utils.config import ALL_FLAGS

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("main.py", "test.py", "models", "datasets", "utils", "scripts")


def test_the_flag_table_offers_exactly_the_families():
    assert sorted(ALL_FLAGS["dataset_name"].choices) == sorted(FAMILIES)


def test_no_module_but_the_registry_tests_a_dataset_name():
    """A comparison, membership test or dict key naming a family anywhere but datasets/families.py would be
    a second source of dataset knowledge."""
    found = []
    for entry in PRODUCTION:
        paths = [ROOT / entry] if entry.endswith(".py") else sorted((ROOT / entry).rglob("*.py"))
        for path in paths:
            if path == ROOT / "datasets" / "families.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Compare):
                    operands = [node.left, *node.comparators]
                elif isinstance(node, ast.Dict):
                    operands = [key for key in node.keys if key is not None]
                else:
                    continue
                names = [op.value for op in operands if isinstance(op, ast.Constant) and op.value in FAMILIES]
                names += [elt.value for op in operands if isinstance(op, (ast.Tuple, ast.List, ast.Set))
                          for elt in op.elts if isinstance(elt, ast.Constant) and elt.value in FAMILIES]
                if names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert not found, "dataset names tested outside datasets/families.py:\n" + "\n".join(found)


def test_family_answers():
    thumos, anet = family_of("Thumos14"), family_of("ActivityNet13")
    assert thumos.windowed and not anet.windowed and thumos.split_folder == "THUMOS14"
    assert thumos.detection_file(3) == "detection_test_3_raw.json"
    assert anet.detection_file(-1) == "detection_val_-1_raw.json"
    assert family_of("Synthetic").generated_on_first_use and not thumos.generated_on_first_use
