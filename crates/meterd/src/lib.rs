//! The meterd binary: every role as a subcommand.
