// Issue 7, item 3 in the engine: temporary outputs carry their owner (machine, boot, pid, process start time) in
// their name; a later run removes those whose owner has ended, including when the pid now belongs to another
// process, and never touches a live run's file, another machine's, or a name it did not make.
using System.Diagnostics;
using System.Text.RegularExpressions;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class TemporaryOutputsTests
{
    private static readonly Regex Owned = new(@"^\.(?<name>.*)\.vdisk-(?<machine>[0-9a-f]{8})-(?<boot>[0-9a-f]{8})-(?<pid>\d+)-(?<start>\d+)-(?<nonce>[0-9a-f]{8})\.tmp$");

    [Fact]
    public void TheNameRecordsThisProcessAsOwner()
    {
        string name = Path.GetFileName(TemporaryOutputs.NameFor("/images/disk.qcow2"));
        var m = Owned.Match(name);
        Assert.True(m.Success, name);
        Assert.Equal("disk.qcow2", m.Groups["name"].Value);
        Assert.Equal(Environment.ProcessId.ToString(), m.Groups["pid"].Value);
        Assert.Equal(StartTime(Environment.ProcessId), long.Parse(m.Groups["start"].Value));
        Assert.NotEqual(name, Path.GetFileName(TemporaryOutputs.NameFor("/images/disk.qcow2")));
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(Path.GetFileName(TemporaryOutputs.NameFor("/images/" + new string('é', 127)))) <= 255);
    }

    [Fact]
    public void StaleFilesOfEndedRunsGoAndEverythingElseStays()
    {
        using var dir = new TempFolder();
        var self = Owned.Match(Path.GetFileName(TemporaryOutputs.NameFor(dir.File("x"))));
        string machine = self.Groups["machine"].Value, boot = self.Groups["boot"].Value;
        using var live = Process.Start(new ProcessStartInfo("sleep", "60"))!;
        using var ended = Process.Start(new ProcessStartInfo("true"))!;
        ended.WaitForExit();
        try
        {
            string Temp(string name, string m, string b, int pid, long start) => Touch(dir.File($".{name}.vdisk-{m}-{b}-{pid}-{start}-0123abcd.tmp"));
            var stale = new[]
            {
                Temp("ended.qcow2", machine, boot, ended.Id, 1),                                     // process gone
                Temp("reused.qcow2", machine, boot, live.Id, StartTime(live.Id) + 1),                // pid now another process
                Temp("rebooted.qcow2", machine, boot == "00000000" ? "11111111" : "00000000", Environment.ProcessId, StartTime(Environment.ProcessId)),
            };
            var kept = new[]
            {
                Temp("mine.qcow2", machine, boot, Environment.ProcessId, StartTime(Environment.ProcessId)),
                Temp("live.qcow2", machine, boot, live.Id, StartTime(live.Id)),
                Temp("other-host.qcow2", machine == "00000000" ? "11111111" : "00000000", boot, ended.Id, 1),
                Touch(dir.File($".legacy.qcow2.vdisk-{Guid.NewGuid():N}.tmp")),
                Touch(dir.File("notes.tmp")),
                Touch(dir.File("disk.qcow2")),
            };

            var removed = TemporaryOutputs.RemoveStale(dir.Path);

            Assert.Equal(stale.Order(), removed.Order());
            Assert.Equal(kept.Order(), Directory.GetFiles(dir.Path).Order());
        }
        finally
        {
            live.Kill();
            live.WaitForExit();
        }
    }

    [Fact]
    public void CreatingAnImageRemovesStaleFilesFromItsFolder()
    {
        using var dir = new TempFolder();
        var self = Owned.Match(Path.GetFileName(TemporaryOutputs.NameFor(dir.File("x"))));
        using var ended = Process.Start(new ProcessStartInfo("true"))!;
        ended.WaitForExit();
        string stale = Touch(dir.File($".killed.qcow2.vdisk-{self.Groups["machine"]}-{self.Groups["boot"]}-{ended.Id}-1-0123abcd.tmp"));

        var result = CreateImage.Run(dir.File("new.qcow2"), new CreateOptions { Size = 1 << 20 });

        Assert.False(File.Exists(stale));
        Assert.Contains(stale, Assert.Single(result.Warnings));
        Assert.Equal(new[] { dir.File("new.qcow2") }, Directory.GetFiles(dir.Path));
    }

    private static string Touch(string path)
    {
        File.WriteAllText(path, "x");
        return path;
    }

    private static long StartTime(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19]);
    }
}
