//! Helpers shared by the integration tests: temp dirs, free ports, starting and
//! stopping the real `rollcalld` binary.
