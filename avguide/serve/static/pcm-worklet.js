// AudioWorklet: the microphone (in an AudioContext at 16 kHz) as signed 16-bit little-endian
// PCM, posted in 20 ms chunks (320 samples) for /api/stream.
class PcmS16le extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Int16Array(320);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.buffer[this.filled++] = Math.round(Math.max(-1, Math.min(1, channel[i])) * 32767);
        if (this.filled === this.buffer.length) {
          this.port.postMessage(this.buffer.buffer.slice(0));  // Int16Array is little-endian here
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('pcm-s16le', PcmS16le);
