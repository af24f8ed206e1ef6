"""The label feedback pipeline: a faust-streaming worker that applies ``fraud.labels`` to the
online store and keeps live model-quality KPIs (see ``fraudstream.features.labels.app``)."""
