"""The stages of ``ccrl train``, one module each, in the order :func:`training.pipeline.run_train`
calls them: ``generators``, ``validate``, ``ccrl_fit``, ``baselines``, ``ensemble``, ``bundle``,
``evaluate``; ``run`` holds what they all read (:class:`training.stages.run.TrainRun`)."""
