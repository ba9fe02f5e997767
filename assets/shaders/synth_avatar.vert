#version 330
// Procedural avatar generator: world-space vertices, one view-projection per view.
uniform mat4 u_view_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_aux;
in vec3 in_colour;
out vec3 v_pos;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_aux;
out vec3 v_colour;
void main() {
    v_pos = in_pos;
    v_normal = in_normal;
    v_uv = in_uv;
    v_aux = in_aux;
    v_colour = in_colour;
    gl_Position = u_view_proj * vec4(in_pos, 1.0);
}
