"""What the model looks at (attention maps scored against defect masks) and how much fine-tuning moved it (audit)."""
