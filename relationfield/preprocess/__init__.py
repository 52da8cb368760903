"""Preprocessing of a real capture into a label store: ``masks`` -> ``relations`` -> ``embed``.

Each stage reads and writes the preprocessing workspace (:mod:`relationfield.preprocess.workspace`);
only ``embed`` writes the label store, in the same format as ``label-gt``.
"""
