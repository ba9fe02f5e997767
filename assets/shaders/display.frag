#version 330 core
// Shows a rendered frame (premultiplied over the background already) scaled to the widget.
uniform sampler2D frame;
in vec2 uv;
out vec4 colour;
void main() {
    colour = vec4(texture(frame, uv).rgb, 1.0);
}
