"""Scale jobs: scale up (`job`), the scale-in steps it and repair use (`scale_in`), drain jobs."""
