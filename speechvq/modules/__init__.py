"""Config-free building blocks: conv stacks, the WaveNet (teacher-forced and cached step-by-step),
output distributions."""
