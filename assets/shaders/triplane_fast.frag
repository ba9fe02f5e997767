#version 330
// Fast triplane ray-marcher: the same rays, box and compositing as triplane_exact.frag, but σ and rgb come from
// the volume baked by the exact shader (hardware trilinear filtering) instead of the decoder. Colour is the
// frontal view's (no view dependence); more samples than the exact path are cheap here.
//@RAYS

uniform sampler3D u_volume;       // rgb, σ at voxel centres

out vec4 frag;

const float EARLY_STOP = 1e-3;    // an approximation anyway: stop once the ray is nearly opaque

void main() {
    vec3 dir = ray_direction();
    float near, far;
    bool hit = intersect_box(u_origin, dir, near, far);
    vec3 colour = vec3(0.0);
    float alpha = 0.0;
    float transmittance = hit ? 1.0 : 0.0;
    float t = sample_distance(near, far, 0, u_samples);
    for (int i = 0; i < u_samples && transmittance >= EARLY_STOP; ++i) {
        float next = i + 1 < u_samples ? sample_distance(near, far, i + 1, u_samples) : far;
        vec4 voxel = texture(u_volume, (u_origin + dir * t) / (2.0 * BOUND) + 0.5);
        float a = 1.0 - exp(-voxel.a * (next - t));
        colour += a * transmittance * voxel.rgb;
        alpha += a * transmittance;
        transmittance *= 1.0 - a;
        t = next;
    }
    frag = vec4(colour + (1.0 - alpha) * u_background, alpha);
}
