"""Financial-news headline sentiment (negative / neutral / positive), trained with Ray Train.

Modules: ``data`` (synthetic headlines, tokenizer, vocabulary), ``model`` (the classifier),
``engine`` (framework-free epoch/eval functions) and ``train`` (the Ray Train entrypoint).
"""
