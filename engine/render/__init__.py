"""Pure-torch volume rendering of triplanes: rays, occupancy grid, sampling, compositing (CPU and CUDA)."""
from engine.render.occupancy import OccupancyGrid
from engine.render.rays import Rays, camera_rays, pixel_rays
from engine.render.volume import RenderConfig, RenderOutput, density_occupancy, render_image, render_rays

__all__ = ["OccupancyGrid", "Rays", "camera_rays", "pixel_rays", "RenderConfig", "RenderOutput", "render_rays",
           "render_image", "density_occupancy"]
