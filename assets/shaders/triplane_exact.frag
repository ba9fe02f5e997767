#version 330
// Exact triplane ray-marcher: engine.render.render_image (stratified midpoint samples, no importance sampling,
// the occupancy grid) step for step, with the decoder generated into decode() by engine/render/gl/shader.py.
// u_mode 1 bakes the fast path's σ/RGB volume with the same code instead.
//@DEFINES
//@RAYS

uniform int u_mode;               // 0: ray-march the view, 1: bake a block of volume slices
uniform float u_occupancy_bound;
uniform int u_volume_size;        // bake: voxels per edge
uniform int u_first_slice;        // bake: the z slice drawn in rows 0 .. u_volume_size - 1
uniform vec3 u_bake_direction;    // bake: the view direction colour is decoded for
uniform sampler2DArray u_planes;  // layer p·GROUPS + g: channels 4g .. 4g+3 of plane p, clamped to [-1, 1]
uniform sampler3D u_occupancy;    // texel [ix, iy, iz]: 1 occupied, 0 empty

out vec4 frag;

const float EARLY_STOP = 1e-5;    // below this transmittance the rest of a ray changes no output by more

vec4 softplus(vec4 x) {           // torch.nn.Softplus (beta 1, threshold 20)
    return mix(log(1.0 + exp(min(x, 20.0))), x, greaterThan(x, vec4(20.0)));
}
vec4 relu(vec4 x) { return max(x, 0.0); }
vec3 sigmoid(vec3 x) { return 1.0 / (1.0 + exp(-x)); }

//@DECODER

// grid_sample(align_corners=True, padding_mode="zeros") of one plane at uv in [-1, 1]² (x = column, y = row):
// the texels around uv and their weights (nw, ne, sw, se), zero for texels off the plane. Manual rather than
// hardware filtering, whose sub-texel weights have only a few bits on many GPUs.
struct Taps { ivec2 lo; ivec2 hi; vec4 weights; };

Taps plane_taps(vec2 uv) {
    ivec2 size = textureSize(u_planes, 0).xy;
    vec2 pixel = (uv + 1.0) * 0.5 * vec2(size - 1);
    vec2 base = floor(pixel);
    vec2 f = pixel - base;
    vec2 e = 1.0 - f;
    ivec2 lo = ivec2(base);
    ivec2 hi = lo + 1;
    vec2 lo_in = vec2(greaterThanEqual(lo, ivec2(0))) * vec2(lessThan(lo, size));
    vec2 hi_in = vec2(greaterThanEqual(hi, ivec2(0))) * vec2(lessThan(hi, size));
    vec4 weights = vec4(e.y * e.x * lo_in.y * lo_in.x, e.y * f.x * lo_in.y * hi_in.x,
                        f.y * e.x * hi_in.y * lo_in.x, f.y * f.x * hi_in.y * hi_in.x);
    ivec2 last = size - 1;
    return Taps(clamp(lo, ivec2(0), last), clamp(hi, ivec2(0), last), weights);
}

vec4 bilinear(Taps t, int layer) {
    return texelFetch(u_planes, ivec3(t.lo.x, t.lo.y, layer), 0) * t.weights.x
         + texelFetch(u_planes, ivec3(t.hi.x, t.lo.y, layer), 0) * t.weights.y
         + texelFetch(u_planes, ivec3(t.lo.x, t.hi.y, layer), 0) * t.weights.z
         + texelFetch(u_planes, ivec3(t.hi.x, t.hi.y, layer), 0) * t.weights.w;
}

// engine.triplane.sample_triplane: the three planes' features, aggregated as the decoder was trained.
void triplane_features(vec3 p, out vec4 feat[FEATURE_GROUPS]) {
    Taps t0 = plane_taps(PLANE0_UV(p)), t1 = plane_taps(PLANE1_UV(p)), t2 = plane_taps(PLANE2_UV(p));
    for (int g = 0; g < GROUPS; ++g) {
        vec4 a = bilinear(t0, g), b = bilinear(t1, GROUPS + g), c = bilinear(t2, 2 * GROUPS + g);
#if defined(AGGREGATE_CONCAT)
        feat[g] = a;
        feat[GROUPS + g] = b;
        feat[2 * GROUPS + g] = c;
#elif defined(AGGREGATE_SUM)
        feat[g] = a + b + c;
#else
        feat[g] = (a + b + c) / 3.0;
#endif
    }
}

// OccupancyGrid.lookup: the cell holding p; outside the grid is empty.
bool occupied(vec3 p) {
    int size = textureSize(u_occupancy, 0).x;
    ivec3 cell = ivec3(floor((p / u_occupancy_bound + 1.0) * 0.5 * float(size)));
    if (any(lessThan(cell, ivec3(0))) || any(greaterThanEqual(cell, ivec3(size)))) return false;
    return texelFetch(u_occupancy, cell, 0).r > 0.5;
}

// The pixel's ray through the box, or for the bake a one-sample "ray" sitting at a voxel centre: one loop and one
// call of decode() serve both (the compiler inlines every call, and the decoder is nearly all of the code).
struct Ray { vec3 origin; vec3 dir; float near; float far; int samples; bool hit; };

Ray pixel_ray() {
    Ray ray = Ray(u_origin, ray_direction(), 0.0, 0.0, u_samples, false);
    ray.hit = intersect_box(ray.origin, ray.dir, ray.near, ray.far);
    return ray;
}

// Row y of a bake pass holds slice u_first_slice + y / u_volume_size.
Ray voxel_ray() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    ivec3 voxel = ivec3(pixel.x, pixel.y % u_volume_size, u_first_slice + pixel.y / u_volume_size);
    vec3 centre = ((vec3(voxel) + 0.5) / float(u_volume_size) * 2.0 - 1.0) * BOUND;
    return Ray(centre, u_bake_direction, 0.0, 0.0, 1, true);
}

// engine.render.volume: alpha compositing with deltas to the next sample (to `far` for the last one). Baking
// writes the voxel's raw (rgb, σ) instead: rgb everywhere (so filtering near the surface pulls in no black) and
// σ zero where the occupancy grid is empty, as in the march.
void main() {
    bool baking = u_mode == 1;
    Ray ray = baking ? voxel_ray() : pixel_ray();
    vec3 colour = vec3(0.0);
    float alpha = 0.0;
    float transmittance = ray.hit ? 1.0 : 0.0;  // a miss skips the loop: background, alpha 0
    int i = 0;
    while (i < ray.samples && transmittance >= EARLY_STOP) {
        // Empty cells have σ = 0 (no colour, transmittance unchanged). Step over them in a loop of their own:
        // pixels shaded together (SIMD lanes, GPU warps) then run the decoder only while one of them needs it,
        // where an `if` around the decoder would cost every lane every sample.
        float t = sample_distance(ray.near, ray.far, i, ray.samples);
        bool inside = occupied(ray.origin + ray.dir * t);
        while (!inside && !baking && ++i < ray.samples) {
            t = sample_distance(ray.near, ray.far, i, ray.samples);
            inside = occupied(ray.origin + ray.dir * t);
        }
        if (i == ray.samples) break;
        vec4 feat[FEATURE_GROUPS];
        triplane_features(ray.origin + ray.dir * t, feat);
        float sigma;
        vec3 rgb;
        decode(feat, ray.dir, sigma, rgb);
        if (baking) {
            frag = vec4(rgb, inside ? sigma : 0.0);
            return;
        }
        float next = ++i < ray.samples ? sample_distance(ray.near, ray.far, i, ray.samples) : ray.far;
        float a = 1.0 - exp(-sigma * max(next - t, 0.0));
        float w = a * transmittance;
        colour += w * rgb;
        alpha += w;
        transmittance *= 1.0 - a + 1e-10;
    }
    frag = vec4(colour + (1.0 - alpha) * u_background, alpha);
}
