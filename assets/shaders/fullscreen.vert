#version 330
// One triangle covering the viewport (no vertex buffer: positions from gl_VertexID); fragments use gl_FragCoord.
void main() {
    vec2 corner = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}
