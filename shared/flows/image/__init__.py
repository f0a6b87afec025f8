"""Image jobs: plan, capture and roll-out (`pipeline`), the donor (`donor`), the canary
(`canary`) and the operations they share (`ops`)."""
