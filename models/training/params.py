"""XGBoost hyperparameters of the clip quality model, with their defaults (the one place).

Kept apart from models/training/train.py so that Dagster's config class can reuse the defaults
without importing XGBoost when the definitions load.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainParams:
    n_estimators: int = 300
    max_depth: int = 6
    learning_rate: float = 0.08
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    min_child_weight: float = 5.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    holdout_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 42
    nthread: int = 2
    device: str = "cpu"

    def xgb_params(self) -> dict:
        return {
            "objective": "reg:squarederror",
            "eval_metric": "rmse",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.nthread,
            "device": self.device,
        }
