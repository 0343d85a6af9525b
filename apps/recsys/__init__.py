"""Top-k item recommendation (NeuMF) on synthetic user-item interactions, with Ray Train.

Modules: ``data`` (latent-factor interaction generator, leave-one-out split), ``metrics``
(hit rate and NDCG at k), ``model`` (NeuMF), ``engine`` (framework-free training and
evaluation), ``train`` (the Ray Train entrypoint) and ``serve`` (the serving Predictor).
"""
