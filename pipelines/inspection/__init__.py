"""Reading a published run without retraining: `python -m pipelines recs | similar | runs`.

recs: a user's recent history and list, with which sources found each item and why it ranks there;
similar: an item's nearest items in the run's FAISS index, with the modalities that agree;
runs: the store's published runs with their key metrics.
"""
