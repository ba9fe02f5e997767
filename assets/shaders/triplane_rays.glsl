// Shared by the triplane ray-marchers: the camera rays and box of engine.render.rays, and the stratified
// midpoint samples of engine.render.volume.
uniform mat3 u_rotation;          // camera-to-world rotation (OpenGL camera axes)
uniform vec3 u_origin;            // camera position
uniform float u_focal;            // pixels, from the horizontal field of view
uniform vec2 u_size;              // viewport width, height in pixels
uniform int u_samples;            // samples per ray
uniform vec3 u_background;

const float BOUND = 1.0;          // the triplane spans [-BOUND, BOUND]³

// pixel_rays: gl_FragCoord is the pixel centre (+0.5) with y counting up from the bottom row, so the camera's
// -(v - h/2) with v = h - y is y - h/2.
vec3 ray_direction() {
    vec2 centred = gl_FragCoord.xy - 0.5 * u_size;
    return normalize(u_rotation * vec3(centred.x / u_focal, centred.y / u_focal, -1.0));
}

// intersect_box: entry and exit distances through the box (entry clamped to 0); false if the ray misses it.
bool intersect_box(vec3 o, vec3 d, out float near, out float far) {
    vec3 inv = 1.0 / mix(d, vec3(1e-9), lessThan(abs(d), vec3(1e-9)));
    vec3 t0 = (-BOUND - o) * inv;
    vec3 t1 = (BOUND - o) * inv;
    vec3 lo = min(t0, t1);
    vec3 hi = max(t0, t1);
    near = max(max(max(lo.x, lo.y), lo.z), 0.0);
    far = min(min(hi.x, hi.y), hi.z);
    return far > near;
}

// Sample i of `count` at the middle of its stratum (render_rays without perturbation).
float sample_distance(float near, float far, int i, int count) {
    return near + (far - near) * (float(i) + 0.5) / float(count);
}
