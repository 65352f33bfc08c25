"""What a run needs around its computation: the workdir and its lock, stop signals, the memory
check, the CPU runtime settings, progress lines and atomic file writes."""
