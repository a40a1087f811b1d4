// Property tests: random write / zero / discard / read sequences on qcow2 (with and without a backing
// image, several cluster sizes and versions) behave exactly like a flat byte array, before and after
// a reopen.
using CsCheck;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2PropertyTests
{
    private const int Size = (1 << 20) - 1536; // not a whole number of clusters: the last one is partial

    private enum OpKind { Write, ZeroUnmap, ZeroKeep, Read }

    private sealed record Op(OpKind Kind, int Offset, int Length, int Seed)
    {
        public override string ToString() => $"{Kind} {Offset}+{Length}";
    }

    private static readonly Gen<Op> GenOp =
        from kind in Gen.Enum<OpKind>()
        from offset in Gen.OneOf(Gen.Int[0, Size - 1], Gen.Int[0, Size / 512 - 1].Select(s => s * 512))
        from length in Gen.OneOf(Gen.Int[1, 5000], Gen.Int[1, 200_000])
        from seed in Gen.Int
        select new Op(kind, offset, Math.Min(length, Size - offset), seed);

    public static TheoryData<string, int, bool, bool> Configs => new()
    {
        { "1.1", 512, false, true },
        { "1.1", 4096, true, false },
        { "1.1", 65536, true, false },
        { "0.10", 4096, false, true },
        { "0.10", 1024, true, true },
        { "1.1", 2048, false, false },
        { "1.1", 512, true, true },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void BehavesLikeAByteArray(string compat, int clusterSize, bool withBacking, bool tinyCaches)
    {
        var options = new CreateOptions { Compat = compat, ClusterSize = clusterSize, RefcountBits = compat == "1.1" ? 4 : 16 };
        Gen.Int.Select(GenOp.Array[1, 40]).Sample((seed, ops) =>
        {
            var backingBytes = withBacking ? Images.Pattern(Size - 12_345, seed) : null;
            var model = new byte[Size];
            backingBytes?.CopyTo(model, 0);
            var backing = backingBytes is null ? null : MemoryImages.Raw(backingBytes);
            var (disk, storage) = MemoryImages.Qcow2(Size, options, backing, tinyCaches);
            foreach (var op in ops) Apply(disk, model, op);
            Assert.Equal(model, Images.ReadAll(disk));
            disk.Driver.Dispose();
            using var reopened = MemoryImages.Reopen(storage.ToArray(), backingBytes is null ? null : MemoryImages.Raw(backingBytes));
            Assert.Equal(model, Images.ReadAll(reopened));
        }, iter: 60);
    }

    private static void Apply(VirtualDisk disk, byte[] model, Op op)
    {
        switch (op.Kind)
        {
            case OpKind.Write:
                var data = Images.Pattern(op.Length, op.Seed);
                disk.Write(op.Offset, data);
                data.CopyTo(model, op.Offset);
                break;
            case OpKind.ZeroUnmap:
            case OpKind.ZeroKeep:
                disk.WriteZeroes(op.Offset, op.Length, unmap: op.Kind == OpKind.ZeroUnmap);
                Array.Clear(model, op.Offset, op.Length);
                break;
            default:
                var read = new byte[op.Length];
                disk.Read(op.Offset, read);
                Assert.True(read.AsSpan().SequenceEqual(model.AsSpan(op.Offset, op.Length)), $"read {op} differs");
                break;
        }
    }
}
