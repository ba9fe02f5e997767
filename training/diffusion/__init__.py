"""Training the cascaded triplane diffusion model (base and upsample stages) on fitted triplanes + portraits."""
