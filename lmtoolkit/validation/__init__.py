"""Validation on published measurements (issue 7).  ``lmtk validate NAME`` lists the datasets
in :data:`lmtoolkit.testbed.validate.DATASETS`; each module here provides
``run(data_dir=None) -> (table, summary_lines)`` and ``report(data_dir=None)``."""
