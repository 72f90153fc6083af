"""The ``ccrl`` command line: the one package above both ``service`` (the runtime) and ``training``
(the offline side). Not to be confused with ``training/ccrl.py``, the CCRL model.

``ccrl serve`` needs the runtime alone; every other command needs the ``train`` extra and the
``training`` package, and is offered only where they are installed (see :mod:`ccrl.cli`). Neither
``service`` nor ``training`` imports this package (tests/test_import_rules.py).
"""
