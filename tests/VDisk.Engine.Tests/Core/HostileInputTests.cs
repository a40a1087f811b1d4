// Issue 7, hostile input, at the engine level: a NUL byte in a backing file name is an error about the overlay
// (not an ArgumentException from the path APIs); FIFOs and character devices are refused before they are opened,
// as the image, its backing file or a VMDK extent, so nothing blocks; a probed VMDK descriptor found in a file that
// cannot be a descriptor is read as raw with a warning, and a plausible one may only name files in its own folder
// (a declared one may name any file).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Corpus;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Core;

public class HostileInputTests
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(5);

    [Fact]
    public void ANulByteInABackingNameIsCorruptionOfTheOverlayForEveryOperation()
    {
        using var dir = new TempFolder();
        string overlay = dir.File("overlay.qcow2");
        File.WriteAllBytes(overlay, new Qcow2Sample { BackingName = "ba\0se.raw", BackingFormat = "raw" }.Build());
        File.WriteAllBytes(dir.File("ba"), new byte[1 << 20]);
        foreach (var operation in new Action[]
        {
            () => InspectImage.Run(overlay),
            () => InspectImage.Chain(overlay),
            () => ImageChain.Open(overlay).Dispose(),
            () => CompareImages.Run(overlay, overlay),
        })
        {
            var e = Assert.Throws<VDiskException>(operation);
            Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
            Assert.Equal(overlay, e.Path);
            Assert.Contains("NUL", e.Message);
            Assert.Contains("'ba\\0se.raw'", e.Message);
        }
    }

    [Fact]
    public void AFifoIsRefusedPromptlyAsTheImageItsBackingFileAndAVmdkExtent()
    {
        using var dir = new TempFolder();
        string fifo = dir.File("pipe");
        CorpusWriter.MakeFifo(fifo);
        string overlay = dir.File("overlay.qcow2");
        File.WriteAllBytes(overlay, new Qcow2Sample { BackingName = "pipe", BackingFormat = "raw" }.Build());
        string descriptor = dir.File("disk.vmdk");
        File.WriteAllText(descriptor, VmdkSample.Flat("pipe"));

        AssertRefusedPromptly(() => InspectImage.Run(fifo), fifo, "named pipe");
        AssertRefusedPromptly(() => ImageChain.Open(overlay).Dispose(), fifo, "the backing file of");
        AssertRefusedPromptly(() => InspectImage.Run(descriptor), fifo, "extent file");
        Assert.Contains("named pipe", InspectImage.Run(overlay).ChainProblem);
    }

    [Fact]
    public void CharacterDevicesAndSocketsAreRefusedBeforeTheyAreOpened()
    {
        using var dir = new TempFolder();
        string socket = dir.File("socket");
        CorpusWriter.MakeSocket(socket);
        AssertRefusedPromptly(() => InspectImage.Run("/dev/zero"), "/dev/zero", "character device");
        AssertRefusedPromptly(() => InspectImage.Run(socket), socket, "socket");
    }

    [Fact]
    public void ADescriptorInTheFirstSectorOfALargeRawDiskIsReadAsRawWithAWarning()
    {
        using var dir = new TempFolder();
        string secret = WriteSecretOutside(dir);
        string disk = dir.File("images/disk.img");
        var bytes = new byte[2 << 20];
        System.Text.Encoding.ASCII.GetBytes(VmdkSample.Flat(secret, 1)).CopyTo(bytes, 0);
        File.WriteAllBytes(disk, bytes);

        var warnings = new List<string>();
        ImageInfo info;
        using (EngineWarnings.Listen(warnings.Add)) info = InspectImage.Run(disk);
        Assert.Equal(ImageFormat.Raw, info.Format);
        Assert.Equal(bytes.Length, info.VirtualSize);
        var warning = Assert.Single(warnings);
        Assert.Contains($"Image format was not specified for '{disk}' and probing guessed raw", warning);
        Assert.Contains("-SourceFormat", warning);

        string output = dir.File("images/out.raw");
        ConvertImage.Run(disk, output, new ConvertOptions { DestinationFormat = ImageFormat.Raw });
        Assert.Equal(bytes, File.ReadAllBytes(output)); // the disk itself, not the host file it names
    }

    [Fact]
    public void AProbedDescriptorMayNotNameFilesOutsideItsFolderButADeclaredOneMay()
    {
        using var dir = new TempFolder();
        string secret = WriteSecretOutside(dir);
        string descriptor = dir.File("images/disk.vmdk");
        File.WriteAllText(descriptor, VmdkSample.Flat(secret, 1));

        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(descriptor, dir.File("images/out.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Equal(descriptor, e.Path);
        Assert.Contains($"'{secret}'", e.Message);
        Assert.Contains("outside its folder", e.Message);
        Assert.False(File.Exists(dir.File("images/out.raw")));

        ConvertImage.Run(descriptor, dir.File("images/declared.raw"), new ConvertOptions { SourceFormat = ImageFormat.Vmdk, DestinationFormat = ImageFormat.Raw });
        Assert.StartsWith("secret", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(dir.File("images/declared.raw")), 0, 6));
    }

    [Fact]
    public void ADescriptorPaddedWithNulBytesAsQemuRewritesItIsStillADescriptor()
    {
        using var dir = new TempFolder();
        string descriptor = dir.File("disk.vmdk");
        var text = System.Text.Encoding.ASCII.GetBytes(VmdkSample.Flat("disk-flat.vmdk"));
        var padded = new byte[10240];
        text.CopyTo(padded, 0);
        File.WriteAllBytes(descriptor, padded);
        File.WriteAllBytes(dir.File("disk-flat.vmdk"), VmdkSample.FlatData());
        var info = InspectImage.Run(descriptor);
        Assert.Equal(ImageFormat.Vmdk, info.Format);
        Assert.Equal(VmdkSample.FlatData().Length, info.VirtualSize);
    }

    // QEMU rewrites the CID on the first write after each open: "%x" over the old value, then the text from parentCID
    // on, written back over the old buffer. A shorter CID (its top byte zero: 1 time in 256) ends the new text before
    // the old one, and the old text's last bytes stay after the new NUL. The probe took that for raw (a 512-byte disk).
    [Theory]
    [InlineData(1)] // "...\"\n\0\n\0...": two digits fewer, as QEMU leaves it
    [InlineData(3)]
    [InlineData(8)]
    public void ADescriptorWithTheLeftoverOfAShorterCidRewriteIsStillADescriptor(int leftover)
    {
        using var dir = new TempFolder();
        string descriptor = dir.File("disk.vmdk");
        var text = System.Text.Encoding.ASCII.GetBytes(VmdkSample.Flat("disk-flat.vmdk"));
        var file = new byte[512];
        text.CopyTo(file, 0);
        text.AsSpan(text.Length - leftover).CopyTo(file.AsSpan(text.Length + 1)); // the old text ended as the new one does
        file[text.Length + 1 + leftover + 3] = (byte)'\n'; // an older rewrite's leftover further on (its own NUL before it)
        File.WriteAllBytes(descriptor, file);
        File.WriteAllBytes(dir.File("disk-flat.vmdk"), VmdkSample.FlatData());

        var warnings = new List<string>();
        ImageInfo info;
        using (EngineWarnings.Listen(warnings.Add)) info = InspectImage.Run(descriptor);
        Assert.Equal(ImageFormat.Vmdk, info.Format);
        Assert.Equal(VmdkSample.FlatData().Length, info.VirtualSize);
        Assert.Empty(warnings);
    }

    [Theory]
    [InlineData("x\n")]        // text, but not the end of this descriptor
    [InlineData("\u0001\n")]   // binary
    public void TextAfterTheNulThatNoRewriteLeftMakesADescriptorLikeFileRaw(string after)
    {
        using var dir = new TempFolder();
        string disk = dir.File("disk.img");
        var text = System.Text.Encoding.ASCII.GetBytes(VmdkSample.Flat("disk-flat.vmdk"));
        var file = new byte[4096];
        text.CopyTo(file, 0);
        System.Text.Encoding.ASCII.GetBytes(after).CopyTo(file, text.Length + 1);
        File.WriteAllBytes(disk, file);
        File.WriteAllBytes(dir.File("disk-flat.vmdk"), VmdkSample.FlatData());

        var warnings = new List<string>();
        ImageInfo info;
        using (EngineWarnings.Listen(warnings.Add)) info = InspectImage.Run(disk);
        Assert.Equal(ImageFormat.Raw, info.Format);
        Assert.Equal(file.Length, info.VirtualSize);
        Assert.Contains($"data after the descriptor text and its NUL padding (at offset {text.Length + 1})", Assert.Single(warnings));
    }

    [Theory]
    [InlineData("# Disk DescriptorFile\nversion=1\n", true)]
    [InlineData("version=3\r\nCID=1\n", true)]
    [InlineData("# a\n   \n  \r\nversion=2\n", true)]
    [InlineData("# Disk DescriptorFile\n\nversion=1\n", false)] // QEMU accepts only lines of spaces before version=
    [InlineData("version=4\n", false)]
    [InlineData("version=1", false)]
    [InlineData(" version=1\n", false)]
    [InlineData("# no newline at the end", false)]
    public void DescriptorsAreRecognisedByQemusRule(string text, bool expected)
        => Assert.Equal(expected, FormatProbe.StartsLikeDescriptor(System.Text.Encoding.ASCII.GetBytes(text)));

    // A host file in dir/outside; the images of the test go in dir/images.
    private static string WriteSecretOutside(TempFolder dir)
    {
        string secret = Path.Combine(Directory.CreateDirectory(dir.File("outside")).FullName, "secret.txt");
        File.WriteAllText(secret, "secret host data\n");
        Directory.CreateDirectory(dir.File("images"));
        return secret;
    }

    // The operation must fail at once with NotAnImage naming `file`; a regression that blocks fails the test, not the run.
    private static void AssertRefusedPromptly(Action operation, string file, string mentions)
    {
        var task = Task.Run(operation);
        Assert.True(((IAsyncResult)task).AsyncWaitHandle.WaitOne(Prompt), "the operation blocked");
        var e = Assert.IsType<VDiskException>(task.Exception?.InnerException);
        Assert.Equal(VDiskErrorKind.NotAnImage, e.Kind);
        Assert.Equal(file, e.Path);
        Assert.Contains(mentions, e.Message);
    }
}
