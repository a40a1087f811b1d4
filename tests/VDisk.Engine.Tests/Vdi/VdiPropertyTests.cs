// Property test: random sequences of writes, zeroing (with and without unmap), reads and reopens on a
// small dynamic or static VDI image behave exactly like a flat byte array, and the image stays consistent.
using CsCheck;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;
using static VDisk.Engine.Tests.Vdi.VdiTestSupport;

namespace VDisk.Engine.Tests.Vdi;

public sealed class VdiPropertyTests
{
    // Five blocks, the last one only partly inside the disk.
    private const long Size = 4L * MiB + 1536;

    private enum OpKind { Write, Zero, ZeroUnmap, Read, Reopen }

    private sealed record Op(OpKind Kind, long Offset, int Length, int Seed)
    {
        public override string ToString() => $"{Kind}({Offset}, {Length})";
    }

    // Offsets anywhere, or near block boundaries; lengths from a byte to more than a block.
    private static readonly Gen<long> GenOffset = Gen.OneOf(
        Gen.Long[0, Size - 1],
        Gen.Select(Gen.Int[0, 4], Gen.Int[-600, 600], (block, delta) => Math.Clamp(block * (long)MiB + delta, 0, Size - 1)));

    private static readonly Gen<int> GenLength = Gen.OneOf(Gen.Int[1, 4096], Gen.Int[1, 3 * MiB / 2]);

    private static readonly Gen<Op> GenOp = Gen.Select(Gen.Int[0, 9], GenOffset, GenLength, Gen.Int,
        (k, offset, length, seed) => new Op(
            k switch { <= 3 => OpKind.Write, 4 or 5 => OpKind.Zero, 6 => OpKind.ZeroUnmap, 7 or 8 => OpKind.Read, _ => OpKind.Reopen },
            offset, (int)Math.Min(length, Size - offset), seed));

    [Fact]
    public void BehavesLikeAByteArray()
    {
        Gen.Select(Gen.Bool, GenOp.Array[1, 24]).Sample((isStatic, ops) => Run(isStatic, ops), iter: 150,
            print: t => $"static={t.Item1}: {string.Join(", ", t.Item2.Select(o => o.ToString()))}");
    }

    private static void Run(bool isStatic, Op[] ops)
    {
        var storage = NewImage(Size, isStatic);
        var model = new byte[Size];
        var disk = Open(storage, writable: true);
        try
        {
            foreach (var op in ops)
            {
                switch (op.Kind)
                {
                    case OpKind.Write:
                        var data = new byte[op.Length];
                        new Random(op.Seed).NextBytes(data);
                        disk.Write(op.Offset, data);
                        data.CopyTo(model, op.Offset);
                        break;
                    case OpKind.Zero:
                    case OpKind.ZeroUnmap:
                        disk.WriteZeroes(op.Offset, op.Length, unmap: op.Kind == OpKind.ZeroUnmap);
                        Array.Clear(model, (int)op.Offset, op.Length);
                        break;
                    case OpKind.Read:
                        var read = new byte[op.Length];
                        disk.Read(op.Offset, read);
                        Assert.True(model.AsSpan((int)op.Offset, op.Length).SequenceEqual(read), $"read {op} differs from the model");
                        break;
                    case OpKind.Reopen:
                        disk.Dispose();
                        AssertConsistent(storage.ToArray());
                        disk = Open(storage, writable: true);
                        break;
                }
            }
        }
        finally
        {
            disk.Dispose();
        }
        AssertConsistent(storage.ToArray());
        using var reopened = Open(storage, writable: false);
        Assert.True(model.AsSpan().SequenceEqual(Images.ReadAll(reopened)), "content after reopen differs from the model");
        if (isStatic) Assert.Equal(0x400 + 5L * MiB, storage.Length); // a static image never grows
    }
}
