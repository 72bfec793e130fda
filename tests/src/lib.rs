//! Support for the QEMU scenario tests in `tests/tests/`: booting Keel and reading its serial log.
