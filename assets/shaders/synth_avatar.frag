#version 330
// Procedural avatar generator: skin with painted face features, eyes, hair strands, patterned cloth, plain parts.
// Lighting is fixed in world space so every view of an avatar agrees (only highlights depend on the view).
#define SKIN 0
#define EYE 1
#define HAIR 2
#define CLOTH 3
#define PLAIN 4

in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_aux;
in vec3 v_colour;
out vec4 frag;

uniform int u_material;
uniform vec3 u_cam_pos;
uniform vec3 u_rgb;      // main colour of this part
uniform vec3 u_rgb2;     // pattern colours
uniform vec3 u_rgb3;
uniform vec3 u_inner;    // shirt under a jacket
uniform int u_pattern;   // 0 solid 1 stripes 2 checks 3 dots 4 knit 5 logo
uniform int u_logo;      // 0 star 1 circle 2 heart 3 bolt
uniform int u_cut;       // 0 tshirt 1 vneck 2 shirt 3 hoodie 4 turtleneck 5 tank 6 jacket
uniform float u_scale;
uniform float u_spec;
uniform float u_shininess;
// face painting (skin) and eyes
uniform vec3 u_skin;
uniform vec3 u_lip;
uniform vec3 u_scalp_rgb;
uniform int u_scalp;     // 0 bald, 1 hair roots, 2 buzz cut
uniform float u_stubble;
uniform vec4 u_mouth;    // width, smile, open, fullness
uniform float u_lid;     // upper eyelid height on the eyeball (-1 closed)
uniform vec3 u_eye_rgb;

const float PI = 3.14159265;

float hash(vec3 p) {
    p = fract(p * vec3(443.897, 441.423, 437.195));
    p += dot(p, p.yzx + 19.19);
    return fract((p.x + p.y) * p.z);
}
float noise(vec3 p) {
    vec3 i = floor(p), f = fract(p);
    f = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash(i), hash(i + vec3(1, 0, 0)), f.x), mix(hash(i + vec3(0, 1, 0)), hash(i + vec3(1, 1, 0)), f.x), f.y),
               mix(mix(hash(i + vec3(0, 0, 1)), hash(i + vec3(1, 0, 1)), f.x), mix(hash(i + vec3(0, 1, 1)), hash(i + vec3(1, 1, 1)), f.x), f.y), f.z);
}

vec3 light(vec3 albedo, vec3 n, vec3 v, float spec, float shininess) {
    vec3 key = normalize(vec3(0.45, 0.55, 0.75));
    vec3 fill = normalize(vec3(-0.7, 0.15, 0.45));
    vec3 rim = normalize(vec3(0.1, 0.4, -0.9));
    float diffuse = 0.60 * max(dot(n, key), 0.0) + 0.25 * max(dot(n, fill), 0.0) + 0.22 * max(dot(n, rim), 0.0);
    float ambient = 0.20 + 0.08 * n.y;
    vec3 h = normalize(key + v);
    float s = spec * pow(max(dot(n, h), 0.0), shininess);
    return albedo * (diffuse + ambient) + vec3(s);
}

// ---- skin: mouth, nostrils, scalp, stubble painted from the undeformed face direction d = v_aux ----
float scalp_height(vec3 d) {
    float front = mix(0.12, 0.50, smoothstep(0.2, 0.75, d.z));
    float back = mix(-0.50, 0.12, smoothstep(-0.6, 0.2, d.z));
    return d.z > 0.2 ? front : back;
}

vec3 paint_mouth(vec3 c, vec3 d) {
    float mw = u_mouth.x, smile = u_mouth.y, open = u_mouth.z, full = u_mouth.w;
    float lx = d.x / mw;
    if (abs(lx) >= 1.0 || d.z < 0.3) return c;
    float line = -0.42 + smile * 0.045 * lx * lx - 0.01 * smile;
    float dy = d.y - line;
    float shape = sqrt(1.0 - lx * lx);
    float gap = open * 0.075 * shape;
    float upper = 0.030 * full * shape * (1.0 - 0.25 * exp(-lx * lx * 60.0));
    float lower = 0.038 * full * shape;
    if (abs(dy) < gap) {  // inside an open mouth: teeth at the top, dark below
        bool teeth = dy > gap * 0.35;
        return teeth ? vec3(0.93, 0.91, 0.86) : vec3(0.25, 0.06, 0.07);
    }
    if (dy > gap && dy < gap + upper) return mix(u_lip, u_lip * 0.8, smoothstep(gap + upper * 0.6, gap + upper, dy));
    if (dy < -gap && dy > -gap - lower) return u_lip * (1.0 + 0.12 * smoothstep(-gap - lower, -gap, dy));
    if (open < 0.01 && abs(dy) < 0.006) return u_lip * 0.45;
    return c;
}

vec3 skin_albedo(vec3 d) {
    vec3 c = u_skin * (0.96 + 0.06 * noise(v_pos * 90.0));
    float cheek = exp(-pow((abs(d.x) - 0.45) / 0.14, 2.0) - pow((d.y + 0.12) / 0.12, 2.0)) * step(0.0, d.z);
    c = mix(c, c * vec3(1.04, 0.92, 0.92), 0.3 * cheek);
    // nostrils under the nose tip
    float nos = exp(-pow((abs(d.x) - 0.05) / 0.022, 2.0) - pow((d.y + 0.19) / 0.014, 2.0)) * step(0.3, d.z);
    c *= 1.0 - 0.65 * nos;
    if (u_stubble > 0.0) {
        float jaw = (1.0 - smoothstep(-0.30, -0.16, d.y - 0.3 * clamp(abs(d.x) - 0.45, 0.0, 1.0))) * smoothstep(-0.35, 0.1, d.z);
        float moustache = step(abs(d.x), u_mouth.x + 0.03) * step(-0.37, d.y) * step(d.y, -0.30);
        float dots = step(0.55, hash(floor(v_pos * 420.0)));
        c = mix(c, u_scalp_rgb * 0.7, u_stubble * max(jaw, moustache) * (0.35 + 0.45 * dots));
    }
    c = paint_mouth(c, d);
    if (u_scalp > 0 && d.y > scalp_height(d)) {
        float edge = smoothstep(0.0, 0.05, d.y - scalp_height(d));
        float streak = noise(vec3(v_pos.x * 300.0, v_pos.y * 60.0, v_pos.z * 300.0));
        vec3 hair = u_scalp_rgb * (0.55 + 0.35 * streak);
        if (u_scalp == 2) hair = mix(c, u_scalp_rgb * 0.8, 0.55 + 0.4 * step(0.45, hash(floor(v_pos * 500.0))));
        c = mix(c, hair, edge);
    }
    return c;
}

// ---- eyes: aux = local direction, +Z looks forward ----
vec3 eye_albedo(vec3 d) {
    if (u_lid < -0.5) {  // closed: the lid covers the eyeball, lashes along a line just below the middle
        bool lashes = abs(d.y + 0.12) < 0.05 && d.z > 0.2;
        return lashes ? vec3(0.05, 0.04, 0.04) : u_skin * 0.93;
    }
    float r = length(d.xy);
    vec3 c = vec3(0.94, 0.92, 0.90);
    if (d.z > 0.0 && r < 0.48) {
        float angle = atan(d.y, d.x);
        float fibres = noise(vec3(angle * 9.0, r * 30.0, 0.0));
        c = u_eye_rgb * (0.65 + 0.6 * fibres) * mix(1.0, 0.5, smoothstep(0.38, 0.48, r));
        if (r < 0.19) c = vec3(0.02);
    }
    if (d.y > u_lid) c = u_skin * 0.93;
    if (abs(d.y - u_lid) < 0.07 && d.z > -0.2) c = vec3(0.05, 0.04, 0.04);  // lash line
    if (d.y < -0.78) c = u_skin * 0.9;
    return c;
}

// ---- cloth ----
float logo_mask(vec2 p) {  // p in [-1, 1] around the logo centre
    float r = length(p), a = atan(p.y, p.x);
    if (u_logo == 0) return step(r, 0.55 + 0.4 * cos(5.0 * (a - PI / 2.0)) * 0.9);
    if (u_logo == 1) return step(r, 1.0) * (step(0.7, r) + step(r, 0.35));
    if (u_logo == 2) { vec2 q = p * 1.2; q.y -= 0.35; float h = pow(q.x * q.x + q.y * q.y - 1.0, 3.0) - q.x * q.x * q.y * q.y * q.y; return step(h, 0.0); }
    return step(abs(p.x + 0.5 * (fract(p.y * 1.2) - 0.5)), 0.2) * step(abs(p.y), 1.0);
}

vec3 pattern_colour(vec2 uv) {
    float s = u_scale;
    vec3 c = u_rgb;
    if (u_pattern == 1) c = fract(uv.y / (0.055 * s)) < 0.45 ? u_rgb2 : u_rgb;
    else if (u_pattern == 2) {
        float a = step(fract(uv.x / (0.085 * s)), 0.42), b = step(fract(uv.y / (0.085 * s)), 0.42);
        c = mix(u_rgb, u_rgb2, 0.5 * (a + b));
        float thin = step(abs(fract(uv.x / (0.085 * s)) - 0.7), 0.03) + step(abs(fract(uv.y / (0.085 * s)) - 0.7), 0.03);
        c = mix(c, u_rgb3, 0.8 * min(thin, 1.0));
    } else if (u_pattern == 3) {
        vec2 cell = uv / (0.065 * s);
        cell.x += 0.5 * mod(floor(cell.y), 2.0);
        c = length(fract(cell) - 0.5) < 0.23 ? u_rgb2 : u_rgb;
    } else if (u_pattern == 4) {
        float col = uv.x / (0.016 * s);
        float row = uv.y / (0.013 * s) + abs(fract(col) - 0.5) * 1.2;
        float stitch = 0.72 + 0.28 * smoothstep(0.0, 0.5, abs(fract(row) - 0.5) * 2.0);
        float band = fract(uv.y / 0.22);
        c = (band < 0.12 ? u_rgb2 : u_rgb) * stitch * (0.9 + 0.2 * noise(vec3(uv * 120.0, 0.0)));
    }
    return c * (0.95 + 0.05 * sin(uv.x * 2400.0) * sin(uv.y * 2400.0));  // weave
}

vec3 cloth_albedo(vec2 uv, float angle) {
    vec3 p = v_pos;
    bool front = cos(angle) > 0.0;
    float neck_base = -0.115;
    if (u_cut == 1 && front && p.y > -0.40 + 1.7 * abs(p.x)) return u_skin;  // v-neck
    if (u_cut == 5) {  // tank top: bare shoulders outside the straps and the scoop
        bool strap = abs(abs(p.x) - 0.19) < 0.045;
        if (p.y > -0.36 && !strap) return u_skin;
        if (front && p.y > -0.30 - 0.9 * p.x * p.x * 0.0 && abs(p.x) < 0.145) return u_skin;
    }
    vec3 c = pattern_colour(uv);
    if (u_pattern == 5 && front) {
        vec2 q = (vec2(p.x - 0.17, p.y + 0.42)) / (0.075 * u_scale);
        if (max(abs(q.x), abs(q.y)) < 1.2 && logo_mask(q) > 0.5) c = u_rgb2;
    }
    if (u_cut == 6 && front && p.y > -0.68 + 1.3 * abs(p.x)) {  // jacket: shirt and tie in the V, lapel edge
        c = (abs(p.x) < 0.022 && p.y < neck_base - 0.03) ? u_rgb3 : u_inner;
    } else if (u_cut == 6 && front && p.y > -0.68 + 1.3 * abs(p.x) - 0.05) c *= 0.72;
    if (u_cut == 2 && front && abs(p.x) < 0.012) c = fract(p.y / 0.07) < 0.18 ? vec3(0.92) : c * 0.85;  // placket
    if (u_cut == 3 && front && abs(abs(p.x) - 0.06) < 0.006 && p.y > -0.36) c = vec3(0.93);  // drawstrings
    return c;
}

void main() {
    vec3 n = normalize(v_normal);
    vec3 v = normalize(u_cam_pos - v_pos);
    if (!gl_FrontFacing && u_material != CLOTH) n = -n;
    if (dot(n, v) < 0.0 && (u_material == HAIR || u_material == PLAIN)) n = -n;  // two-sided thin parts
    vec3 colour;
    if (u_material == SKIN) {
        colour = light(skin_albedo(normalize(v_aux)), n, v, 0.08, 24.0);
    } else if (u_material == EYE) {
        colour = light(eye_albedo(normalize(v_aux)), n, v, 0.55, 90.0);
    } else if (u_material == HAIR) {
        vec3 t = normalize(v_aux);
        vec3 key = normalize(vec3(0.45, 0.55, 0.75));
        vec3 h = normalize(key + v);
        float th = dot(t, h);
        float kk = pow(sqrt(max(1.0 - th * th, 0.0)), 60.0);
        float along = v_uv.y;
        vec3 albedo = v_colour * mix(0.55, 1.0, smoothstep(0.0, 0.35, along)) * (0.75 + 0.25 * sin(PI * v_uv.x));
        colour = light(albedo, n, v, 0.0, 1.0) + 0.22 * kk * mix(vec3(1.0), v_colour, 0.5);
    } else if (u_material == CLOTH) {
        if (!gl_FrontFacing) n = -n;
        colour = light(cloth_albedo(v_uv, v_aux.x), n, v, 0.04, 12.0);
    } else {
        colour = light(u_rgb, n, v, u_spec, u_shininess);
    }
    frag = vec4(clamp(colour, 0.0, 1.0), 1.0);
}
