"""archsearch: config-driven architecture search for diffusion U-Nets."""
