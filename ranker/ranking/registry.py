"""The rankers by name, as configs call them (`train.ranker.kind`). A new ranker: a class with fit(data,
valid=None), predict(data), save(dir) and load(dir), and one line here; tests/ranker/test_ranker_contract.py
then tests it."""

from ranker.ranking.lgbm import LGBMRankerModel
from ranker.ranking.mlp import MLPRankerModel

RANKERS = {"lgbm": LGBMRankerModel, "mlp": MLPRankerModel}
