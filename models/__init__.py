"""The bundled models (installed as ``n2n_infer.models``); see the ``*.md`` model cards."""
