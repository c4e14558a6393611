"""Parts of ``workbench demo`` (one module per subsystem)."""
