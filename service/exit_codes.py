"""The CLI's exit codes, one meaning each across every command."""

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT = 0, 1, 2
