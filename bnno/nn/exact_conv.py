"""draft"""
import tensorflow as tf


def _group_channels(in_channels, taps, bound=512):
    best = None
    for c in range(2, in_channels + 1, 2):
        if in_channels % c == 0 and taps * c <= bound:
            best = c
    return best


def binary_conv2d(x, kernel, strides, padding, dilations):
    kh, kw, cin, cout = kernel.shape
    c = _group_channels(cin, kh * kw)
    groups = cin // c
    strides4 = [1, *strides, 1]
    dil4 = [1, *dilations, 1]

    @tf.custom_gradient
    def conv(x, kernel):
        grouped_kernel = tf.reshape(
            tf.transpose(tf.reshape(kernel, [kh, kw, groups, c, cout]), [0, 1, 3, 2, 4]),
            [kh, kw, c, groups * cout])
        z = tf.nn.conv2d(tf.cast(x, tf.bfloat16), tf.cast(grouped_kernel, tf.bfloat16),
                         strides4, padding.upper(), dilations=dil4)
        shape = tf.shape(z)
        z = tf.reshape(z, tf.concat([shape[:3], [groups, cout]], 0))
        y = tf.reduce_sum(tf.cast(z, tf.float32), axis=3)
        y = tf.ensure_shape(y, tf.TensorShape([x.shape[0], None, None, cout]))

        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=strides4,
                padding=padding.upper(), dilations=dil4)
            dk = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=strides4,
                padding=padding.upper(), dilations=dil4)
            return dx, dk
        return y, grad

    return conv(x, kernel)
