"""The course kit's grader, release and class hub, in rooms by concern.

Each room imports only from the rooms listed before it (``tests/grader/test_layers.py``
holds this order):

- ``cells``, ``labs``: the ground floor. What a notebook cell of a lab is (test cell, grade
  id, hidden tests, top-level definitions, the test-cell protocol) and where the labs live.
- ``grading``: grading a submission and a class. ``records`` and ``gradebook`` (what is
  passed and kept), ``sandbox`` (the box), ``references``, ``equivalents``, ``judge``,
  ``answer_key``, ``validation``, ``similarity``, ``provenance``, ``preprocessors``,
  ``worker`` (one submission, in its own process) and ``batch`` (a class, shards, resume).
- ``course``: authoring and releasing the labs: ``release`` (``rlhf-course release``),
  ``authoring`` (the notebooks' plain-text form), ``selftest``, ``claims``.
- ``classhub``: the class hub. ``exchange`` (nbgrader's exchange, roster, feedback),
  ``hub`` (JupyterHub's logins, users and limits), ``memory_notice``.
- ``bench``: benchmarks of the labs and of training against peers; grades nothing.
- ``cli``: ``rlhf-course``, on top of all of them.
"""
