stub:
