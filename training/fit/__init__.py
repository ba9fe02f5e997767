"""Triplane fitting (paper Sec. 3.1): stage 1 learns the shared decoder with task replay + IWC, stage 2 fits each
avatar's triplane with the decoder frozen."""
