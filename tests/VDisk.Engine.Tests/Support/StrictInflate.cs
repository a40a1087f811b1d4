// Inflates raw deflate with a given window, handing out only a little output per call, so every match
// further back than the window is rejected ("invalid distance too far back"), as a reader that inflates
// cluster data piecewise with QEMU's windowBits -12 would reject it.
using System.Runtime.InteropServices;
using VDisk.Engine.Compression;
using ZStream = VDisk.Engine.Compression.NativeDeflate.ZStream;

namespace VDisk.Engine.Tests.Support;

public static unsafe partial class StrictInflate
{
    [LibraryImport(NativeDeflate.Library, EntryPoint = "CompressionNative_InflateInit2_")]
    private static partial int InflateInit2(ZStream* stream, int windowBits);

    [LibraryImport(NativeDeflate.Library, EntryPoint = "CompressionNative_Inflate")]
    private static partial int Inflate(ZStream* stream, int flush);

    [LibraryImport(NativeDeflate.Library, EntryPoint = "CompressionNative_InflateEnd")]
    private static partial int InflateEnd(ZStream* stream);

    /// <summary>Returns the inflated bytes, or throws naming zlib's error.</summary>
    public static byte[] Run(ReadOnlySpan<byte> compressed, int expectedLength, int windowBits = -12, int step = 256)
    {
        var output = new byte[expectedLength];
        var stream = default(ZStream);
        if (InflateInit2(&stream, windowBits) != 0) throw new InvalidOperationException("inflateInit2 failed");
        try
        {
            fixed (byte* input = compressed)
            fixed (byte* outPtr = output)
            {
                stream.NextIn = input;
                stream.AvailIn = (uint)compressed.Length;
                int done = 0;
                while (done < expectedLength)
                {
                    stream.NextOut = outPtr + done;
                    stream.AvailOut = (uint)Math.Min(step, expectedLength - done);
                    int result = Inflate(&stream, 0);
                    done = (int)(stream.NextOut - outPtr);
                    if (result == 1) break; // Z_STREAM_END
                    if (result != 0)
                        throw new InvalidDataException($"inflate failed ({result}): {Marshal.PtrToStringAnsi(stream.Message)}");
                }
                if (done != expectedLength) throw new InvalidDataException($"inflated {done} bytes, expected {expectedLength}");
                return output;
            }
        }
        finally
        {
            InflateEnd(&stream);
        }
    }
}
