"""Ground truth: real QEMU live migrations on 127.0.0.1, recorded and compared with the simulator.

* :mod:`.setup` — ``lmtk testbed setup``: QEMU 10 and a kernel from Debian packages, the guest build;
* :mod:`.qmp`, :mod:`.qemu`, :mod:`.driver` — QMP client, QEMU processes (always cleaned up),
  :class:`~.driver.Testbed` (boot once, migrate back and forth);
* :mod:`.record` — one run → a small netCDF Dataset with the simulator's variable names;
* :mod:`.matrix` — ``lmtk testbed run`` (Hydra config ``configs/testbed/``);
* :mod:`.validate` — ``lmtk validate [DATASET]``, :func:`~.validate.compare`.
"""
