"""Training: named losses, checkpoints with exact resume, logging, distributed set-up, and the
stages (baseline animator, expert, AV-guided) as thin explicit loops over these pieces."""
